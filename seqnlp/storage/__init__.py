"""Storage: crash-safe folders and files, model folders and their cards, and hf:// models through the Hub."""
