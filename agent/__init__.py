"""The objective-driven agent: cost module, memory, actor and training loop (see MISSION.md)."""
