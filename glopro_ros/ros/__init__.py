"""ROS 2 shell: rclpy nodes, message conversion, TF access, markers."""
