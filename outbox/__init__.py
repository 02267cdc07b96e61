"""Pay and report: payment batch files and run reports, written atomically to the outbox."""
