import ArgumentParser
import MalCore

useFixedMmapThreshold()
MalconvCommand.main()
