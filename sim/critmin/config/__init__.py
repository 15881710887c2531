"""Config schema, validation and the builder that turns configs into model objects."""
