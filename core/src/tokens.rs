//! Token counting with tiktoken (placeholder).
