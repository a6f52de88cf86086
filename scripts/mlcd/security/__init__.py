"""Scanning and compliance: findings, the one policy, the ignore file, the model scanner."""
