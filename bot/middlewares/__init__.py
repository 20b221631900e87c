"""Cross-cutting steps every update passes before its handler (see bot.app for the order)."""
