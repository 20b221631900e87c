"""The support desk's rules: plain functions over storage, no Telegram types."""
