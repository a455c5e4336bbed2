"""Ray plumbing: placement planning (pure), runtime start-up, actor groups with deadlines."""
