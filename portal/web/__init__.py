"""Browser pages: case list, viewer, clinical-context editor, comparison (served around the Vite build)."""
