// FastCGI module: see DESIGN.md
