"""Tests of the tier0 serve process: the HTTP app and the server around it."""
