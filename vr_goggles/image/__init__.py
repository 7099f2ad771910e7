"""Images at the edges: the ROS message codec, the one preprocessing and the label classes.

``codec`` turns every ``sensor_msgs/Image`` / ``CompressedImage`` encoding into uint8 RGB and
back without cv_bridge; ``preprocess`` is the single resize + normalisation path shared by the
simulator, training, the nodes and replay; ``semantics`` names the segmentation classes.
Nothing here imports torch or rclpy.
"""
