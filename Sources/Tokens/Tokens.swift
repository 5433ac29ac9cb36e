// Tokens module: see DESIGN.md
