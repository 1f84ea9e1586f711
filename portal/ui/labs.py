"""Pages of labs (to be built): routes added to portal.ui.bp."""
