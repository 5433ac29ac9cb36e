print("mailgate")
