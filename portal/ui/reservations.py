"""Pages of reservations (to be built): routes added to portal.ui.bp."""
