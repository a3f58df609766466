"""Operations around the search: nightly runs, cluster submission, emulator calibration."""
