"""Models of the validation-study app."""
