"""Book-cover OCR side classifier: engines, preprocessing, cached parallel reading, text model, fusion."""
