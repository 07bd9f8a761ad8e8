# frozen_string_literal: true

require_relative 'test_helper'

# DeclareAmqp::Helpers: the plain-Ruby pieces the recipes and the resource share.
class HelpersTest < Minitest::Test
  H = DeclareAmqp::Helpers

  def test_plain_turns_mashes_and_symbols_into_plain_data
    mash = ChefStub::Mash[{ 'queues' => [ChefStub::Mash[{ name: 'q', durable: true, x: :sym }]] }]
    out = H.plain(mash)

    assert_equal({ 'queues' => [{ 'name' => 'q', 'durable' => true, 'x' => 'sym' }] }, out)
    assert_equal [Hash, Hash], [out.class, out['queues'].first.class]
  end

  def test_plain_refuses_values_yaml_would_tag
    error = assert_raises(ArgumentError) { H.plain('when' => Time.at(0)) }
    assert_includes error.message, 'cannot put a Time into a topology file'
  end

  def test_redact_replaces_every_secret_and_ignores_empty_ones
    assert_equal 'user ******** and ********', H.redact('user pw and pw', ['pw', '', nil])
  end

  def test_url_without_credentials
    assert H.url_without_credentials?('amqps://mq:5671/%2F')
    refute H.url_without_credentials?('amqp://user@mq/')
    refute H.url_without_credentials?('amqp://user:pw@mq/')
    refute H.url_without_credentials?('not a url')
  end
end
