"""Pages of admin (to be built): routes added to portal.ui.bp."""
