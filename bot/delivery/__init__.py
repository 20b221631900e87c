"""From the outbox to Telegram: the sender and what shapes its calls."""
