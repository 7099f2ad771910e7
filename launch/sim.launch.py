"""Launch the simulator as a fake robot plus the navigation pipeline, end to end without a robot.

    ros2 launch vr_goggles sim.launch.py domain:=real episodes:=10

sim_bridge publishes /camera/image_raw and steps on /cmd_vel; results arrive on /episode
(std_msgs/String, JSON): ``ros2 topic echo /episode``.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    """sim_bridge + navigation.launch.py wired to it."""
    share = get_package_share_directory('vr_goggles')
    arg = LaunchConfiguration
    navigation = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, 'launch', 'navigation.launch.py')),
        launch_arguments={'camera': '/camera/image_raw', 'cmd_vel': '/cmd_vel'}.items())
    return LaunchDescription([
        DeclareLaunchArgument('domain', default_value='real',
                              choices=['real', 'sim', 'randomized'],
                              description='Simulator rendering domain'),
        DeclareLaunchArgument('split', default_value='eval', choices=['eval', 'train'],
                              description='Layout split'),
        DeclareLaunchArgument('seed', default_value='0', description='First layout offset'),
        DeclareLaunchArgument('episodes', default_value='0',
                              description='Episodes to run, then end the launch (0: forever)'),
        DeclareLaunchArgument('step_period', default_value='0.5',
                              description='Seconds per simulator step (0.5 = real time)'),
        DeclareLaunchArgument('stamped', default_value='false', choices=['true', 'false'],
                              description='TwistStamped on cmd_vel'),
        navigation,
        Node(
            package='vr_goggles', executable='sim_bridge', name='sim_bridge', output='screen',
            parameters=[{
                'domain': arg('domain'),
                'split': arg('split'),
                'seed': ParameterValue(arg('seed'), value_type=int),
                'episodes': ParameterValue(arg('episodes'), value_type=int),
                'step_period': ParameterValue(arg('step_period'), value_type=float),
                'stamped': ParameterValue(arg('stamped'), value_type=bool),
            }],
            remappings=[('camera/image_raw', '/camera/image_raw'), ('cmd_vel', '/cmd_vel')],
            # sim_bridge exits after its episodes: take the navigation nodes down with it
            on_exit=[Shutdown(reason='sim_bridge finished its episodes')],
        ),
    ])
