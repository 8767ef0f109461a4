"""The Matrix adapter: matrix-nio behind a small interface; nio errors become MatrixError here."""
