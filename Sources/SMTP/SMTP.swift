// SMTP module: see DESIGN.md
