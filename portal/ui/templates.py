"""Pages of templates (to be built): routes added to portal.ui.bp."""
