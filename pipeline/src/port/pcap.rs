//! Capture-file port: pcap and pcapng. STUB (helper H1).
