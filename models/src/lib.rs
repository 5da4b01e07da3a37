//! durasim-models: reference models and durability checkers (pure,
//! sequential, no simulator). The models and checkers land with their issue.
