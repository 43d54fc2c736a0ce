"""Application services: one function per interaction, reading like the security story."""
