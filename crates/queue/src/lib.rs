//! The queue between paysettle's receiver and worker (placeholder until the
//! "Queue" issue lands).
