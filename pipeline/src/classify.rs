//! Classify: decides each parsed UDP datagram's fate. STUB.
