"""The Gradio demo: `grefel-hf demo`, and `app.py` at the repository root for a Hugging Face Space.

Modules: `options` (the demo's settings and the face-detection controls it offers), `analysis` (what the page shows,
computed without Gradio: per-face table rows, annotated photos, frames and videos, saliency overlays), `app` (the
Gradio page and its server) and `command` (the `grefel-hf demo` subcommand). Gradio is an optional extra
(`pip install "grefel_hf[demo]"`): only `app` imports it, inside its functions, so importing this package or
`grefel_hf` never does.
"""
