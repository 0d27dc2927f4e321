"""Run state: the schema, the StateStore, and the buffered Recorder the engine writes through."""
