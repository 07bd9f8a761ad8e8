# frozen_string_literal: true

# Runs the whole minitest suite of the cookbook in one process.
Dir[File.join(__dir__, '*_test.rb')].sort.each { |file| require file }
