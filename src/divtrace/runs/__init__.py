"""The run directory: its paths (``layout``), completion markers (``markers``) and the contract every stage
implements (``stage``)."""
