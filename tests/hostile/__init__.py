"""What a hostile client gets (STYLE.md "Hostile by default"): limits and errors, never a crash."""
