//! The systems under test, each from a production design in the specs.
