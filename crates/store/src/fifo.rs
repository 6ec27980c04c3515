//! Placeholder: the durable FIFO (owned by the queue work).
