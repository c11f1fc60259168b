"""The web app of a trained model (app.py, a Gradio page) and its export as a Hugging Face Space."""
