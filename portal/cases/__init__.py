"""Cases: one planning CT, its versioned clinical context, ground truth, site and cohort tags."""
