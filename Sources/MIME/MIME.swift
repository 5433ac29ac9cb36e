// MIME module: see DESIGN.md
