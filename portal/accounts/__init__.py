"""Users, roles (oncologist/rater, study coordinator, trainee, admin) and sites; authentication and scoping helpers."""
