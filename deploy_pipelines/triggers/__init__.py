"""What starts runs without anyone pressing a button: tag and branch sensors, promotion,
the post-promotion metrics watch, notifications, and the maintenance schedules."""
