// Empty on purpose: the crate exists for the dependencies in its Cargo.toml.
