"""The search job: the Tune assembly, the device farm on Ray, the live progress view."""
