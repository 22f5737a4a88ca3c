//! The sans-IO brain of the built-in mock upstream (placeholder).
