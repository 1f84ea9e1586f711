"""The portal's API: one module per area, each with a blueprint `bp` (portal.BLUEPRINTS)."""
