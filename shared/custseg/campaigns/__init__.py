"""Campaign results measured per segment (uplift against control) and what to offer."""
