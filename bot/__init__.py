"""Bot server package: platform adapters, CLI entry point."""
