"""Constants shared by the tests (conftest modules cannot be imported by name)."""

# Recognisable so the leak tests can grep for it; not shaped like any real provider's key.
TEST_KEY = "kki-test-key-3b8f1e0c9d7a6b5e4f"
