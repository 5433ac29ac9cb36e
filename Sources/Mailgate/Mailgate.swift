// Mailgate module: see DESIGN.md
