"""CLI commands for this area (registered on genzoo.cli._app.app)."""
