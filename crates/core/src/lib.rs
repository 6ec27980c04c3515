//! paysettle's core.
