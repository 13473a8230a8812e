"""Reports for operators and the programmes they publish to."""
