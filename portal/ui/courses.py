"""Pages of courses (to be built): routes added to portal.ui.bp."""
